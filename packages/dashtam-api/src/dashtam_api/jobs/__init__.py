"""Background jobs: the refresher and the sync loop (in the API process, or `dashtam-jobs`)."""
