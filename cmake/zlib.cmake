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

add_library(sakura_zlib INTERFACE)
add_library(sakura::zlib ALIAS sakura_zlib)
# Installed as sakura::zlib (export namespace sakura:: + this name), the same name as in the build tree.
set_target_properties(sakura_zlib PROPERTIES EXPORT_NAME zlib)
target_link_libraries(sakura_zlib INTERFACE sakura ZLIB::ZLIB)
target_compile_definitions(sakura_zlib INTERFACE SAKURA_WITH_ZLIB=1)

if(SAKURA_INSTALL)
  install(TARGETS sakura_zlib EXPORT sakuraTargets)
endif()
string(APPEND SAKURA_CONFIG_EXTRA "find_dependency(ZLIB)\n")
