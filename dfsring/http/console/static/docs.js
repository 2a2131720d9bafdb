// Swagger UI over this node's OpenAPI document; no inline script (the page's CSP forbids it).
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  withCredentials: true,
});
