# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Optional gzip input (.mtx.gz): the INTERFACE target sakura::zlib adds zlib and SAKURA_WITH_ZLIB=1 to
# sakura::sakura. Without zlib it is absent, and a gzip-compressed matrix is an error naming the fix.

option(SAKURA_ZLIB "Provide sakura::zlib (reading gzip-compressed MatrixMarket files) when zlib is found" ON)
if(NOT SAKURA_ZLIB)
  return()
endif()

find_package(ZLIB)
if(NOT ZLIB_FOUND)
  message(STATUS "sakura: zlib not found; sakura::zlib (.mtx.gz reading) is not available (Debian: zlib1g-dev)")
  return()
endif()

include(${CMAKE_CURRENT_LIST_DIR}/interface_target.cmake)
sakura_interface_target(zlib SAKURA_WITH_ZLIB ZLIB::ZLIB)
string(APPEND SAKURA_CONFIG_EXTRA "find_dependency(ZLIB)\n")
