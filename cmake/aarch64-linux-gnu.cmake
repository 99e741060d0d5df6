# SPDX-License-Identifier: MIT
# Cross toolchain for 64-bit Arm Linux with Debian's gcc-aarch64-linux-gnu:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# The sections come from include/oncpu/arch/aarch64.h; run the result in
# kernel/vm-test --arch aarch64 (qemu-user has no rseq).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(ONCPU_CROSS_PREFIX aarch64-linux-gnu- CACHE STRING "Prefix of the cross tools")
set(CMAKE_C_COMPILER ${ONCPU_CROSS_PREFIX}gcc)
find_program(ONCPU_CROSS_CXX ${ONCPU_CROSS_PREFIX}g++)
if(ONCPU_CROSS_CXX)
  set(CMAKE_CXX_COMPILER ${ONCPU_CROSS_CXX})
else()
  # check_language(CXX) would find the host's c++ (wrong architecture).
  set(ONCPU_CXX_TESTS OFF CACHE BOOL "no ${ONCPU_CROSS_PREFIX}g++: no C++ header test")
endif()
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# qemu-user, where installed, runs the test programs (without rseq: qemu
# answers ENOSYS, so they exercise the fallback).
find_program(ONCPU_QEMU_AARCH64 qemu-aarch64)
if(ONCPU_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ONCPU_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
