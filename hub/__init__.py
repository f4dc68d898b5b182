"""The DSOP hub: one streaming call in, a fan-out to the banks KAR names, results streamed back."""
