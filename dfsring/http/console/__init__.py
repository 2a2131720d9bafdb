"""The web console (issue 20): dashboard JSON, OpenAPI document and Swagger UI, and /ui.

An edge like the native API: it reads the cluster through the same sources the CLI's
``dfsring status`` reads (dfsring.http.cluster_api, /v1/node/stats' figures) and calls no
service the native API does not call. ``setup`` registers its routes on the client app.
"""
