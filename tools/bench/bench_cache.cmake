# SPDX-License-Identifier: MIT
# bench_cache.c loads mimalloc and jemalloc with dlopen (libdl before glibc 2.34).
target_link_libraries(oncpu-bench PRIVATE ${CMAKE_DL_LIBS})
