"""Offline evaluation of the recommenders on real transactions.

* ``metrics``: pure ranking metrics (recall, nDCG, MRR, hit rate, coverage, intra-list diversity);
* ``importer``: CSV -> validated interaction and product rows -> the plugin's tables (all or nothing);
* ``runner``: temporal hold-out of each shopper's last basket, the services and baselines scored on it;
* ``report``: the table, JSON and plots of a run.

Commands: ``manage.py ragrec_import`` and ``manage.py ragrec_evaluate``; see docs/evaluation.md.
"""
