"""TF Serving's gRPC API from Python: an embedded server over SavedModels and a client."""
