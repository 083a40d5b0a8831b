"""PII detection, validation and sanitization."""
