"""Offline builder for corral's end-to-end test images (see e2e/images/build.sh)."""
