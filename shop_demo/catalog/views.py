"""Storefront: home, category, product and a simple text search."""

from __future__ import annotations

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from django.views.generic import DetailView, ListView, TemplateView

from .models import Category, Product

PAGE_SIZE = 24
SEARCH_MAX_LENGTH = 100
SEARCH_MAX_TERMS = 8


def _listed():
    return Product.objects.active().select_related("category")


class HomeView(TemplateView):
    template_name = "catalog/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["new_products"] = list(_listed().filter(parent__isnull=True)[:12])
        context["category_tiles"] = Category.objects.annotate(
            product_count=Count("products", filter=Q(products__is_active=True))
        ).filter(product_count__gt=0)
        return context


class CategoryView(ListView):
    template_name = "catalog/category.html"
    context_object_name = "products"
    paginate_by = PAGE_SIZE

    def get_queryset(self):
        self.category = get_object_or_404(Category, slug=self.kwargs["slug"])
        return _listed().filter(category=self.category).order_by("title", "pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["category"] = self.category
        context["current_category_slug"] = self.category.slug
        return context


class ProductView(DetailView):
    template_name = "catalog/product.html"
    context_object_name = "product"

    def get_queryset(self):
        queryset = Product.objects.select_related("category", "parent")
        if not self.request.user.is_staff:
            queryset = queryset.filter(is_active=True)
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["variants"] = list(self.object.family())
        context["current_category_slug"] = self.object.category.slug
        return context


class SearchView(ListView):
    """Title/description ``icontains`` search (the plugin's semantic search can replace it)."""

    template_name = "catalog/search.html"
    context_object_name = "products"
    paginate_by = PAGE_SIZE

    def get_query(self) -> str:
        return " ".join(self.request.GET.get("q", "").split())[:SEARCH_MAX_LENGTH]

    def get_queryset(self):
        terms = self.get_query().split()[:SEARCH_MAX_TERMS]
        if not terms:
            return Product.objects.none()
        queryset = _listed()
        for term in terms:  # every word must appear in the title or the description
            queryset = queryset.filter(Q(title__icontains=term) | Q(description__icontains=term))
        return queryset.order_by("title", "pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["query"] = self.get_query()
        return context
