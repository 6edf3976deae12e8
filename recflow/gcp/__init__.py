"""Google Cloud: `recflow submit` (a Vertex AI training job) and `recflow trainer-image` (the
training container's tag in Artifact Registry)."""
