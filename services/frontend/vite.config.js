// The nginx image serves `dist/` (deploy/frontend.Dockerfile); the gateway serves the source.
import { defineConfig } from "vite";

export default defineConfig({
  build: { outDir: "dist", target: "es2022", sourcemap: false, assetsInlineLimit: 0 },
  server: { proxy: { "/v1": "http://127.0.0.1:8000" } },
});
