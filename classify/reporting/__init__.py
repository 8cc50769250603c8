"""classify.reporting: the report page and every figure."""
