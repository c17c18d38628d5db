"""``resume=``: runs that go on from where a killed one stopped (see ``run.py``)."""
