"""Built-in dicom-gateway plugins. Each module is one plugin, loaded through
the ``dicom_gateway`` entry-point group like any third-party plugin."""
