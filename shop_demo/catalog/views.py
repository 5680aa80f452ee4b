"""Storefront: home, category, product, hybrid search, search by photo, basket and checkout.

Recommendations come from the ragrec_django plugin: the templates use its tags
(``{% load ragrec %}``), the search views call its services, a product page
records a "view" event for the visitor (signed-in user, else the session),
adding to the basket an "add_to_cart" event and checking out one "purchase"
event per basket line, all sharing the order's id.

The demo also has a "log in as a demo user" page (``SHOP_DEMO_ONE_CLICK_LOGIN``,
on only while DEBUG): one click signs in one of the seeded demo people.
"""

from __future__ import annotations

import logging
import secrets

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.db import DatabaseError, transaction
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import DetailView, ListView, TemplateView

from ragrec_django.conf import ragrec_settings
from ragrec_django.exceptions import BadQuery, EventError, RecommendationError, SpaceNotReady
from ragrec_django.services import recommend
from ragrec_django.services.events import EventInput, record_events, request_origin
from ragrec_django.services.inputs import usable_key
from ragrec_django.services.recommend import Visitor
from ragrec_django.services.visitors import ensure_session_key

from . import people, search_page
from .cart import MAX_QUANTITY, Cart
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


def visitor_fields(request) -> dict:
    """Who an event belongs to (the signed-in user, else the session, created if needed), and where it came from."""
    user = request.user if request.user.is_authenticated else None
    return {
        "user_id": user.pk if user else None,
        "session_key": "" if user else ensure_session_key(request),
        "origin": request_origin(request),
    }


def record(request, events: list[EventInput], what: str) -> bool:
    """Record shopper events; a lost event is logged, never an error page."""
    try:
        record_events(events)
        return True
    except EventError as exc:
        logger.warning("Could not record %s: %s", what, exc)
        return False


def record_view(request, product: Product) -> None:
    """Record that the visitor (signed-in user, else the session, created if needed) viewed ``product``."""
    record(
        request,
        [EventInput(event="view", item=str(product.pk), source="product_page", **visitor_fields(request))],
        "a view of product %s" % product.pk,
    )


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
        self.results, self.refusal = None, ""
        query = self.get_query()
        if query:
            try:
                who = visitor_fields(request)  # searches are logged for the shop's search analytics
                visitor = Visitor(user_id=who["user_id"], session_key=who["session_key"])
                with transaction.atomic():
                    self.results = recommend.search(
                        query, k=SEARCH_RESULTS, visitor=visitor, **search_page.search_options(request.GET)
                    )
            except BadQuery as exc:  # text no search can use (a NUL character...): refused, as the API does
                self.refusal = str(exc)
            except (RecommendationError, SpaceNotReady) as exc:
                logger.warning("Search for %r failed: %s", query, exc)
            except DatabaseError:  # the page falls back to word matching rather than failing
                logger.exception("Search for %r failed", query)
        if self.results is not None and self.results.redirect:  # the merchandiser sends this query to a page
            return redirect(self.results.redirect)
        response = super().get(request, *args, **kwargs)
        if self.refusal:
            response.status_code = 400
        return response

    def get_queryset(self):
        if self.refusal:
            return Product.objects.none()
        if self.results or (self.results is not None and search_page.chosen_filters(self.request.GET)):
            # the products of the hybrid results, in their order (none when the shopper's facet choices leave none)
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
        context.update(query=query, results=self.results, photo_form=PhotoSearchForm(), search_error=self.refusal)
        context.update(search_page.controls(query, self.request.GET, self.results))
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
        except BadQuery as exc:
            return self.page(request, form, error="That file is not a photo we can read. %s" % exc, status=400)
        except SpaceNotReady:
            return self.page(
                request,
                form,
                error="Search by photo is not available yet: the shop's pictures have not been indexed.",
                status=503,
            )
        return self.page(request, form, results=results)

    def page(self, request, form, *, error: str = "", results=None, status: int = 200):
        context = {
            "query": "",
            "photo_form": form,
            "photo_error": error,
            "photo_results": results,
            "photo_search": True,
        }
        return TemplateResponse(request, SearchView.template_name, context, status=status)


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# ---------------------------------------------------------------- basket and checkout


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


def _int(value, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _quantity(value, default: int = 1) -> int:
    return max(0, min(MAX_QUANTITY, _int(value, default)))


class AddToCartView(View):
    """POST product + quantity: put it in the session basket and record an "add_to_cart" event."""

    http_method_names = ["post"]

    def post(self, request):
        pk = _int(request.POST.get("product"))
        if not 0 < pk < 2**63:
            raise Http404("No such product.")
        product = get_object_or_404(Product.objects.active(), pk=pk)
        back = _safe_next(request, product.get_absolute_url())
        quantity = _quantity(request.POST.get("quantity")) or 1
        if not product.in_stock:
            messages.error(request, "Sorry, %s is out of stock." % product.title)
            return redirect(back)
        try:
            Cart(request.session).add(product, quantity)
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect(back)
        source = request.POST.get("source", "")[:64] or "product_page"
        record(
            request,
            [
                EventInput(
                    event="add_to_cart",
                    item=str(product.pk),
                    quantity=quantity,
                    source=source,
                    **visitor_fields(request),
                )
            ],
            "an add to cart of product %s" % product.pk,
        )
        messages.success(request, "Added %s to your basket." % product.title)
        return redirect(back)


class CartView(View):
    """GET: the basket. POST: change quantities ("update") or remove a line ("remove")."""

    template_name = "catalog/cart.html"

    def get(self, request):
        cart = Cart(request.session)
        lines = cart.lines()
        context = {
            "lines": lines,
            "total": cart.total(lines),
            "max_quantity": MAX_QUANTITY,
            "basket": [line.product for line in lines],
        }
        return TemplateResponse(request, self.template_name, context)

    def post(self, request):
        cart = Cart(request.session)
        if request.POST.get("remove"):
            cart.set(request.POST["remove"], 0)
            messages.success(request, "Removed from your basket.")
        else:
            for key in list(cart.quantities):
                if "quantity-%s" % key in request.POST:
                    cart.set(key, _quantity(request.POST["quantity-%s" % key], cart.quantities[key]))
            messages.success(request, "Basket updated.")
        return redirect("catalog:cart")


CHECKOUT_TOKEN = "shop_demo_checkout"
LAST_ORDER = "shop_demo_last_order"


class CheckoutView(View):
    """GET: confirm the order. POST: place it: one "purchase" event per line, all with the order's id.

    The order id is drawn when the confirmation page is shown and must come back
    with the form, so a second submission of the same page places nothing twice.
    """

    template_name = "catalog/checkout.html"

    def get(self, request):
        cart = Cart(request.session)
        lines = cart.lines()
        if not lines:
            return redirect("catalog:cart")
        order_id = request.session.get(CHECKOUT_TOKEN) or "ord-%s" % secrets.token_hex(6)
        request.session[CHECKOUT_TOKEN] = order_id
        return TemplateResponse(
            request, self.template_name, {"lines": lines, "total": cart.total(lines), "order_id": order_id}
        )

    def post(self, request):
        order_id = request.POST.get("order", "")
        last = request.session.get(LAST_ORDER) or {}
        if order_id and last.get("id") == order_id:
            return redirect("catalog:order_done")  # the same form sent twice
        if not order_id or order_id != request.session.get(CHECKOUT_TOKEN):
            messages.error(request, "Your basket changed or the page expired: please check your order again.")
            return redirect("catalog:checkout")
        cart = Cart(request.session)
        lines = cart.lines()
        if not lines:
            return redirect("catalog:cart")
        who = visitor_fields(request)
        events = [
            EventInput(
                event="purchase",
                item=str(line.product.pk),
                quantity=line.quantity,
                order_id=order_id,
                source="checkout",
                idempotency_key="purchase:%s:%s" % (order_id, line.product.pk),
                **who,
            )
            for line in lines
        ]
        record(request, events, "order %s" % order_id)
        request.session[LAST_ORDER] = {
            "id": order_id,
            "total": str(cart.total(lines)),
            "lines": [
                {
                    "title": line.product.title,
                    "url": line.product.get_absolute_url(),
                    "quantity": line.quantity,
                    "total": str(line.total),
                    "key": str(line.product.pk),
                }
                for line in lines
            ],
        }
        request.session.pop(CHECKOUT_TOKEN, None)
        cart.clear()
        return redirect("catalog:order_done")


class OrderDoneView(View):
    template_name = "catalog/order_done.html"

    def get(self, request):
        order = request.session.get(LAST_ORDER)
        if not order:
            return redirect("catalog:cart")
        basket = [line["key"] for line in order["lines"]]
        return TemplateResponse(request, self.template_name, {"order": order, "basket": basket})


# ---------------------------------------------------------------- demo login


def demo_login_enabled() -> bool:
    return bool(getattr(settings, "SHOP_DEMO_ONE_CLICK_LOGIN", False))


class DemoLoginView(View):
    """The demo people, each with a one-click "log in" button (only where SHOP_DEMO_ONE_CLICK_LOGIN is on).

    Only the seeded demo accounts can be signed in here (their username and
    their demo e-mail address must match, and none is a superuser).
    """

    template_name = "catalog/demo_login.html"

    def dispatch(self, request, *args, **kwargs):
        if not demo_login_enabled():
            raise Http404("The one-click demo login is off.")
        return super().dispatch(request, *args, **kwargs)

    def demo_users(self):
        return (
            get_user_model()
            ._default_manager.filter(username__in=people.DEMO_USERNAMES, is_active=True, is_superuser=False)
            .filter(email__endswith="@" + people.EMAIL_DOMAIN)
        )

    def get(self, request):
        found = {user.username: user for user in self.demo_users()}
        names = {c.slug: c.name for c in Category.objects.all()}
        shoppers = [
            {"user": found[s.username], "likes": [names.get(slug, slug) for slug in s.likes]}
            for s in people.SHOPPERS
            if s.username in found
        ]
        staff = [{"user": found[s.username], "role": s.role} for s in people.STAFF if s.username in found]
        context = {
            "shoppers": shoppers,
            "staff": staff,
            "password": people.DEMO_PASSWORD,
            "next": _safe_next(request, ""),
        }
        return TemplateResponse(request, self.template_name, context)

    def post(self, request):
        username = usable_key(request.POST.get("username", ""), 150)  # a NUL cannot be looked up
        user = self.demo_users().filter(username=username).first() if username else None
        if user is None:
            raise Http404("No such demo user.")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "You are logged in as %s." % user.get_username())
        fallback = reverse("admin:index") if user.is_staff else reverse("catalog:home")
        return redirect(_safe_next(request, fallback))
