"""Moving data from the old PHP system's MySQL tables (``paycenter import-legacy``)."""
