"""REST endpoints of text search: ``search/`` (understanding, facets, sorting) and ``search/suggest/`` (autocomplete).

    GET search/?q=blue+t-shirt+under+30&facets=all&filter=colour:blue&sort=price_asc
    GET search/suggest/?q=blue+li

Thin views over ``services.search`` (through ``services.recommend.search``); errors as in ``api.views``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ..services import recommend
from ..services import search as search_service
from . import experiment_serializers as tracked
from . import serializers as s
from .views import ERROR_400, ERROR_429, ERROR_503, SESSION_PARAMETER, TAG_RECOMMEND, RagrecAPIView

FILTER_MAX = 20
SUGGEST_MAX = 20

# ---------------------------------------------------------------- parameters


class SearchParametersSerializer(s.SearchQuerySerializer):
    sort = serializers.ChoiceField(
        choices=search_service.SORTS,
        required=False,
        default="relevance",
        help_text="relevance (default), price_asc, price_desc or newest.",
    )
    facets = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text='Facets to count, separated by commas ("category,colour,price"), or "all": category, price and '
        'RAGREC["SEARCH_ATTRIBUTES"]. None by default.',
    )
    filter = serializers.ListField(
        child=serializers.CharField(max_length=300),
        required=False,
        default=list,
        max_length=FILTER_MAX,
        help_text='A facet choice as name:value ("colour:red", "category:Mugs", "price:10-25"); repeat the parameter '
        "for more. Values of one facet are alternatives, facets are combined.",
    )
    min_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    max_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)

    def validate_facets(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if names == ["all"]:
            return ["category", *search_service.attributes(), "price"]
        return names

    def validate_filter(self, value: list[str]) -> dict[str, list[str]]:
        chosen: dict[str, list[str]] = {}
        for entry in value:
            name, separator, choice = entry.partition(":")
            if not separator or not name.strip() or not choice.strip():
                raise serializers.ValidationError("Use name:value, e.g. colour:red (got %r)." % entry[:50])
            chosen.setdefault(name.strip(), []).append(choice.strip())
        return chosen


class SuggestParametersSerializer(serializers.Serializer):
    q = serializers.CharField(
        max_length=s.QUERY_MAX_LENGTH, trim_whitespace=False, help_text="What the shopper has typed so far."
    )
    k = serializers.IntegerField(required=False, default=8, min_value=1, max_value=SUGGEST_MAX)
    session = serializers.CharField(required=False, allow_blank=True, max_length=s.SESSION_MAX_LENGTH)


# ---------------------------------------------------------------- results


class FacetValueSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="What to send back as filter=<facet>:<value>.")
    label = serializers.CharField()
    count = serializers.IntegerField(help_text="Items of the result set with this value.")
    selected = serializers.BooleanField()


class FacetSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    values = FacetValueSerializer(many=True)


class UnderstoodTermSerializer(serializers.Serializer):
    attribute = serializers.CharField(help_text="category, price, colour, material, size, brand...")
    value = serializers.CharField(help_text='The catalogue\'s value ("T-shirts") or the price range ("under £30").')
    text = serializers.CharField(help_text="The words of the query it was read from.")
    use = serializers.ChoiceField(
        choices=["filter", "boost", "words"],
        help_text="filter: results must have it; boost: results with it rank higher; words: searched as words only.",
    )


class SearchResultsSerializer(s.RecommendationListSerializer):
    notice = serializers.CharField(
        allow_null=True, help_text="Set when nothing matched the query as typed: \"No results for 'X'; showing 'Y'\"."
    )
    sort = serializers.CharField()
    understood = UnderstoodTermSerializer(many=True, help_text="What the query was read as.")
    facets = FacetSerializer(many=True, help_text="The facets asked for, with counts over the result set.")
    redirect = serializers.CharField(
        allow_null=True,
        help_text="The page the merchandiser sends this query to (a path of the shop or an http(s) URL): a "
        "storefront should open it instead of showing the results, which are still given. Null when none.",
    )


class TrackedSearchResultsSerializer(SearchResultsSerializer, tracked.TrackingFieldsMixin):
    pass


class SuggestionSerializer(serializers.Serializer):
    text = serializers.CharField()
    kind = serializers.ChoiceField(choices=["query", "completion", "category", "product"])
    url = serializers.CharField(help_text="A product's page; empty for the other kinds.")
    category = serializers.CharField()


class SuggestionsSerializer(serializers.Serializer):
    query = serializers.CharField()
    suggestions = SuggestionSerializer(many=True)


# ---------------------------------------------------------------- views


class SearchView(RagrecAPIView):
    query_serializer_class = SearchParametersSerializer
    recommender = "search"

    @extend_schema(
        operation_id="ragrec_search",
        summary="Hybrid text search",
        description="Keyword (typo-corrected full-text, with the merchandiser's synonyms), semantic text and CLIP "
        "text-to-image retrieval fused by reciprocal rank fusion. The query is understood against the catalogue: a "
        'price phrase ("under 30") and a category name filter, colours and materials boost (`understood`), and each '
        "result's `reason` names what it matched. When nothing matches, the weakest term is dropped and `notice` "
        "says so. `facets` counts the result set; `filter` narrows it. `query` in the response is the corrected "
        "query; `redirect`, when set, is the page the merchandiser sends this query to; their pins and boosts for "
        "the query are applied to the results. The search is logged for the visitor (search analytics).",
        tags=[TAG_RECOMMEND],
        parameters=[SearchParametersSerializer, SESSION_PARAMETER],
        responses={200: TrackedSearchResultsSerializer, 400: ERROR_400, 429: ERROR_429, 503: ERROR_503},
    )
    def get(self, request):
        params = self.params()
        return self.respond(
            params,
            lambda c: recommend.search(
                params["q"],
                k=params["k"],
                config=c,
                sort=params["sort"],
                facets=params.get("facets") or (),
                selected=params["filter"],
                min_price=params.get("min_price"),
                max_price=params.get("max_price"),
                visitor=self.visitor,
            ),
            TrackedSearchResultsSerializer,
        )


class SuggestView(RagrecAPIView):
    query_serializer_class = SuggestParametersSerializer

    @extend_schema(
        operation_id="ragrec_search_suggest",
        summary="Autocomplete",
        description="Suggestions while the shopper types: popular past searches, the words typed with the last "
        "one completed (typo-tolerant), categories and products (those of categories the visitor looked at "
        "recently first).",
        tags=[TAG_RECOMMEND],
        parameters=[SuggestParametersSerializer],
        responses={200: SuggestionsSerializer, 400: ERROR_400, 429: ERROR_429},
    )
    def get(self, request):
        params = self.params()
        found = search_service.suggest(params["q"], k=params["k"], visitor=self.visitor)
        return Response(SuggestionsSerializer({"query": params["q"], "suggestions": found}).data)
