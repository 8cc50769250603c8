"""classify.workflows: compare, learning curve, active learning, few-shot, audit."""
