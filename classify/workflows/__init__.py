"""classify.workflows: workflows on a cache: compare, learning curve, active learning, few-shot, the audit,
the robust model against a baseline."""
