"""The MLflow model registry: registering a candidate with its metrics and lineage (``register``,
``lineage``, ``pyfunc``), the gate and the champion alias (``promotion``, ``audit``, ``lease``,
``mlflow_direct``), the tracking URI (``tracking``) and the champion's Bento (``packaging``).

Above ``evaluation`` (the gate's paired intervals) and ``models`` (the pyfunc wraps the predictor).
"""
