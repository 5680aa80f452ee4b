"""Catalogue models: categories and products (a product may be a variant of a parent)."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=120, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:category", args=[self.slug])


class ProductQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Product(models.Model):
    """A product. Variants (other colour or size) point at the same ``parent``."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    stock = models.PositiveIntegerField(default=0)
    image = models.ImageField(upload_to="products/", max_length=255, blank=True)
    colour = models.CharField(max_length=50, blank=True)
    material = models.CharField(max_length=50, blank=True)
    size = models.CharField(max_length=50, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="variants",
        limit_choices_to={"parent__isnull": True},
        help_text="The product this one is a variant of (same product, other colour or size).",
    )
    is_active = models.BooleanField(default=True, help_text="Shown in the shop and eligible for recommendations.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["category", "is_active"], name="catalog_product_cat_active"),
            models.Index(fields=["-created_at", "-id"], name="catalog_product_newest"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="catalog_product_price_not_negative"),
            models.CheckConstraint(
                condition=Q(parent__isnull=True) | ~Q(parent=models.F("id")), name="catalog_product_not_own_parent"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("catalog:product", args=[self.slug])

    @property
    def in_stock(self) -> bool:
        return self.stock > 0

    def family(self):
        """Other products of this product's variant group (its parent and the parent's variants)."""
        root_id = self.parent_id or self.pk
        return (
            Product.objects.active()
            .filter(Q(pk=root_id) | Q(parent_id=root_id))
            .exclude(pk=self.pk)
            .select_related("category")
            .order_by("colour", "size", "pk")
        )
