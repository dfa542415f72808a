"""waba_lookup: which WhatsApp Business Account is bound to a CAMS customer, cached and paced."""

__version__ = "0.1.0"
