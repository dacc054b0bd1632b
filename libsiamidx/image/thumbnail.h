/* image/thumbnail.h - small JPEGs of image files for reports (siamidx_image_thumbnail_jpeg,
   declared in siamidx_ext.h). */
#ifndef SX_IMAGE_THUMBNAIL_H
#define SX_IMAGE_THUMBNAIL_H

#include "siamidx_ext.h"

#endif
