"""Audio at the edges: PCM16 bytes and float32 arrays, files, and resampling.

Inside voxloop, audio headed into a model is float32 mono in [-1, 1]; audio headed out is
int16. Conversions live here and nowhere else.
"""
