"""File formats: pure readers and writers, no threads (AEDAT 4.0, AEDAT 3.1, DV network framing)."""
