"""`eaglectl bench`: which speculative configuration serves fastest, measured against the plain target."""
