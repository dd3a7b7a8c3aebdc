// zlib (pkg-config zlib): gzip-compressed image layers and `docker import` tarballs.
#include <zlib.h>
