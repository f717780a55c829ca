"""The stream endpoint, the one SSE codec every byte goes through, and the registry of open
streams.
"""
