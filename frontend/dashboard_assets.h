/* The dashboard's page, script and style sheet, built into brume-frontend from
 * frontend/dashboard/ by frontend/dashboard/embed.cmake. */
#ifndef BRUME_FRONTEND_DASHBOARD_ASSETS_H
#define BRUME_FRONTEND_DASHBOARD_ASSETS_H

#include <stddef.h>

typedef struct brume_dashboard_asset {
  const char *path;         /* where it is served: "/", "/static/app.js" */
  const char *content_type; /* its Content-Type */
  const unsigned char *data;
  size_t len;
} brume_dashboard_asset;

/* Every asset, ended by one whose path is NULL. */
extern const brume_dashboard_asset brume_dashboard_assets[];

#endif
