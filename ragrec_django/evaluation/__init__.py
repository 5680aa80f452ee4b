"""Offline evaluation of the recommenders on real transactions.

* ``metrics``: pure ranking metrics (recall, nDCG, MRR, hit rate, coverage, intra-list diversity);
* ``runner``: temporal hold-out of each shopper's last basket, the services and baselines scored on it;
* ``report``: the table, JSON and plots of a run.

Data comes in through ``ragrec_django.ingest`` (``manage.py ragrec_import``). Command:
``manage.py ragrec_evaluate``; see docs/evaluation.md.
"""
