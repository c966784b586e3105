"""PET body-weight SUV for dicom-gateway (a template third-party plugin)."""

__version__ = "1.0.0"
