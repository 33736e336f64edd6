"""The outer layer: the ``hambench`` command line and the demo. The only modules that import
:mod:`hambench.pipelines`, :mod:`hambench.models` and :mod:`hambench.leaderboard`.
"""
