"""The HTTP surface: request context and error boundary, CORS, health and readiness, the OpenAPI
document, the demo page.
"""
