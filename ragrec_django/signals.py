"""Signals ragrec sends, for a host to subscribe to (like ``allauth.account.signals``).

Each is sent once the database transaction that made the change commits, so a
receiver sees the committed rows and never hears of a change that was rolled back::

    from django.dispatch import receiver
    from ragrec_django.signals import embeddings_updated

    @receiver(embeddings_updated)
    def refresh_cache(sender, space, generation, item_ids, item_keys, **kwargs):
        ...

The item hooks ragrec itself connects (re-encode on save, forget on delete) are in
``ragrec_django.receivers``.
"""

from django.dispatch import Signal

#: Vectors of a batch of items were written to a space (``services.encoding.encode_items``, at most
#: ``WRITE_BATCH`` items per send). ``sender``: the ``Embedding`` model. Arguments: ``space`` (the
#: space's name), ``generation`` (the ``SpaceGeneration`` written: the active one, or the one being
#: built by a switch), ``item_ids`` (``Item`` mirror ids) and ``item_keys`` (the host's keys, as
#: strings), in the same order.
embeddings_updated = Signal()

#: An approved draft was published (``services.descriptions.publish``). ``sender``: the
#: ``DescriptionDraft`` model. Arguments: ``draft`` (now ``published``), ``publication`` (the new
#: current ``PublishedDescription``) and ``user`` (who published it).
description_published = Signal()

#: An earlier published text was made current again (``services.descriptions.rollback``).
#: ``sender``: the ``PublishedDescription`` model. Arguments: ``publication`` (the new current
#: ``PublishedDescription``, holding the restored text), ``restored_from`` (the earlier
#: publication whose text it restores) and ``user`` (who rolled back).
description_rolled_back = Signal()
