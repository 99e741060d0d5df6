/* SPDX-License-Identifier: MIT */
/* oncpu/version.h - the version of the headers; oncpu_version() the library's. */
#ifndef ONCPU_VERSION_H
#define ONCPU_VERSION_H

#include <oncpu/config.h>

#define ONCPU_VERSION_MAJOR  0
#define ONCPU_VERSION_MINOR  1
#define ONCPU_VERSION_PATCH  0
#define ONCPU_VERSION_STRING "0.1.0"

ONCPU_BEGIN_DECLS
/* oncpu_version - the running library's version string, e.g. "0.1.0". */
ONCPU_API const char *oncpu_version(void);
ONCPU_END_DECLS

#endif /* ONCPU_VERSION_H */
