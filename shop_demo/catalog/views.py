"""Storefront: home, category, product, hybrid search and search by photo.

Recommendations come from the ragrec_django plugin: the templates use its tags
(``{% load ragrec %}``), the search views call its services, and a product page
records a "view" event for the visitor (signed-in user, else the session).
"""

from __future__ import annotations

import logging

from django import forms
from django.db import DatabaseError, transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views import View
from django.views.generic import DetailView, ListView, TemplateView

from ragrec_django import storage
from ragrec_django.api.visitors import ensure_session_key
from ragrec_django.conf import ragrec_settings
from ragrec_django.services import recommend
from ragrec_django.services.events import EventError, EventInput, record_events

from .models import Category, Product

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
SEARCH_MAX_LENGTH = 100
SEARCH_MAX_TERMS = 8
SEARCH_RESULTS = 24
MULTIPART_OVERHEAD = 64 * 1024


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

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        if self.object.is_active:  # staff previews of hidden products are not shopper behaviour
            record_view(request, self.object)
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["variants"] = list(self.object.family())
        context["current_category_slug"] = self.object.category.slug
        return context


def record_view(request, product: Product) -> None:
    """Record that the visitor (signed-in user, else the session, created if needed) viewed ``product``."""
    user = request.user if request.user.is_authenticated else None
    event = EventInput(
        event="view",
        item=str(product.pk),
        user_id=user.pk if user else None,
        session_key="" if user else ensure_session_key(request),
        source="product_page",
    )
    try:
        record_events([event])
    except EventError as exc:  # never break the page for a lost event
        logger.warning("Could not record a view of product %s: %s", product.pk, exc)


class SearchView(ListView):
    """Hybrid search (keywords with typo correction, text and image semantics) through the plugin.

    Until the catalogue is indexed (``manage.py ragrec_reindex``) the plugin has
    nothing to search; the page then (and if the search fails) falls back to
    matching every word in the title or description.
    """

    template_name = "catalog/search.html"
    context_object_name = "products"
    paginate_by = PAGE_SIZE

    def get_query(self) -> str:
        return " ".join(self.request.GET.get("q", "").split())[:SEARCH_MAX_LENGTH]

    def get(self, request, *args, **kwargs):
        self.results = None
        query = self.get_query()
        if query:
            try:
                with transaction.atomic():
                    self.results = recommend.search(query, k=SEARCH_RESULTS)
            except (recommend.RecommendationError, storage.SpaceNotReady) as exc:
                logger.warning("Search for %r failed: %s", query, exc)
            except DatabaseError:  # the page falls back to word matching rather than failing
                logger.exception("Search for %r failed", query)
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if self.results:  # the products of the hybrid results, in their order
            found = {str(p.pk): p for p in _listed().filter(pk__in=[r.item.key for r in self.results])}
            return [found[r.item.key] for r in self.results if r.item.key in found]
        terms = self.get_query().split()[:SEARCH_MAX_TERMS]
        if not terms:
            return Product.objects.none()
        queryset = _listed()
        for term in terms:  # every word must appear in the title or the description
            queryset = queryset.filter(Q(title__icontains=term) | Q(description__icontains=term))
        return queryset.order_by("title", "pk")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.get_query()
        context.update(query=query, results=self.results, photo_form=PhotoSearchForm())
        if self.results and self.results.query and self.results.query.lower() != query.lower():
            context["corrected_query"] = self.results.query
        return context


class PhotoSearchForm(forms.Form):
    image = forms.FileField(
        label="Photo",
        error_messages={"required": "Choose a photo to search with.", "empty": "The photo you sent is an empty file."},
    )


class PhotoSearchView(View):
    """Search by photo: the upload goes to the plugin's CLIP image space; errors are shown on the search page."""

    http_method_names = ["get", "post"]

    def get(self, request):
        return redirect("catalog:search")

    def post(self, request):
        limit = int(ragrec_settings.MAX_UPLOAD_BYTES)
        too_large = "The photo is too large: please send one of at most %d MB." % max(1, limit // (1024 * 1024))
        if _content_length(request) > limit + MULTIPART_OVERHEAD:  # refuse before reading the upload
            return self.page(request, PhotoSearchForm(), error=too_large, status=413)
        form = PhotoSearchForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.page(request, form, error=" ".join(form.errors["image"]), status=400)
        upload = form.cleaned_data["image"]
        if upload.size > limit:
            return self.page(request, form, error=too_large, status=413)
        try:
            results = recommend.search_by_image(upload.read(), k=SEARCH_RESULTS)
        except recommend.BadQuery as exc:
            return self.page(request, form, error="That file is not a photo we can read. %s" % exc, status=400)
        except storage.SpaceNotReady:
            return self.page(request, form, error="Search by photo is not available yet: the shop's pictures "
                                                  "have not been indexed.", status=503)
        return self.page(request, form, results=results)

    def page(self, request, form, *, error: str = "", results=None, status: int = 200):
        context = {"query": "", "photo_form": form, "photo_error": error, "photo_results": results, "photo_search": True}
        return TemplateResponse(request, SearchView.template_name, context, status=status)


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class AssistantView(View):
    """A shopping assistant page: a request in plain words, a grounded answer and the products it cites."""

    template_name = "catalog/assistant.html"

    def get(self, request):
        from ragrec_django.ml.generation import GenerationError
        from ragrec_django.services import assistant

        text = request.GET.get("q", "").strip()
        context = {"request_text": text}
        status = 200
        if text:
            try:
                context["answer"] = assistant.answer(text, k=8)
            except recommend.RecommendationError as exc:
                context["error"], status = str(exc), 400
            except (storage.SpaceNotReady, GenerationError) as exc:
                logger.warning("Assistant unavailable: %s", exc)
                context["error"], status = "The assistant is not available right now.", 503
        return TemplateResponse(request, self.template_name, context, status=status)
