"""The template's runtime for this app (owned by sdk-deploy-template: `copier update` replaces it, never edit it)."""
