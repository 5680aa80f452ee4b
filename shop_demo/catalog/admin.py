from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html

from .models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "product_count"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_product_count=Count("products"))

    @admin.display(description="products", ordering="_product_count")
    def product_count(self, obj):
        return obj._product_count


def _thumbnail(product, size):
    if not product.image:
        return "—"
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" style="object-fit:cover;border-radius:4px">',
        product.image.url,
        product.title,
        size,
        size,
    )


class VariantInline(admin.TabularInline):
    model = Product
    fk_name = "parent"
    fields = ["title", "slug", "colour", "size", "price", "stock", "is_active"]
    show_change_link = True
    extra = 0
    verbose_name = "variant"
    verbose_name_plural = "variants"

    def has_add_permission(self, request, obj=None):
        # A new variant needs a category and more: add it as a product with this parent.
        return False


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "title", "category", "colour", "size", "price", "stock", "is_active", "parent"]
    list_display_links = ["thumbnail", "title"]
    list_filter = ["is_active", "category", "colour", "material", ("parent", admin.EmptyFieldListFilter)]
    list_editable = ["is_active"]
    list_select_related = ["category", "parent"]
    search_fields = ["title", "slug", "description", "colour", "material"]
    prepopulated_fields = {"slug": ["title"]}
    raw_id_fields = ["parent"]
    readonly_fields = ["image_preview", "created_at", "updated_at"]
    date_hierarchy = "created_at"
    list_per_page = 50
    inlines = [VariantInline]
    fieldsets = [
        (None, {"fields": ["title", "slug", "category", "description", "is_active"]}),
        ("Price and stock", {"fields": ["price", "stock"]}),
        ("Attributes", {"fields": ["colour", "material", "size", "parent"]}),
        ("Image", {"fields": ["image", "image_preview"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="image")
    def thumbnail(self, obj):
        return _thumbnail(obj, 48)

    @admin.display(description="preview")
    def image_preview(self, obj):
        return _thumbnail(obj, 256)
