# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Optional AnnData (.h5ad) support: the INTERFACE target sakura::hdf5 adds the HDF5 C library and
# SAKURA_WITH_HDF5=1 to sakura::sakura. Without HDF5 it is simply absent (sakura/io/h5ad.hpp then #errors).

option(SAKURA_HDF5 "Provide sakura::hdf5 (the .h5ad reader) when the HDF5 C library is found" ON)
if(NOT SAKURA_HDF5)
  return()
endif()

# FindHDF5's C component test-compiles a .c file, so C must be enabled (the project itself is CXX only).
include(CheckLanguage)
check_language(C)
if(NOT CMAKE_C_COMPILER)
  message(STATUS "sakura: no C compiler, which FindHDF5 needs; sakura::hdf5 (.h5ad reading) is not available")
  return()
endif()
enable_language(C)
find_package(HDF5 COMPONENTS C)
if(NOT HDF5_FOUND)
  message(STATUS "sakura: HDF5 C library not found; sakura::hdf5 (.h5ad reading) is not available")
  return()
endif()

include(${CMAKE_CURRENT_LIST_DIR}/interface_target.cmake)
sakura_interface_target(hdf5 SAKURA_WITH_HDF5)
if(TARGET hdf5::hdf5)
  # FindHDF5 (CMake >= 3.19) defines it; consumers get it back through find_dependency below.
  target_link_libraries(sakura_hdf5 INTERFACE hdf5::hdf5)
else()
  target_include_directories(sakura_hdf5 INTERFACE ${HDF5_INCLUDE_DIRS})
  target_link_libraries(sakura_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
  target_compile_definitions(sakura_hdf5 INTERFACE ${HDF5_DEFINITIONS})
endif()

# The reader inflates deflate-compressed chunks once itself, to check their size before libhdf5
# copies them (libhdf5 1.10 trusts it and reads past its buffer): zlib, which libhdf5 links anyway.
find_package(ZLIB QUIET)
if(ZLIB_FOUND)
  target_link_libraries(sakura_hdf5 INTERFACE ZLIB::ZLIB)
  target_compile_definitions(sakura_hdf5 INTERFACE SAKURA_HDF5_ZLIB=1)
  string(APPEND SAKURA_CONFIG_EXTRA "find_dependency(ZLIB)\n")
endif()

# For sakuraConfig.cmake: consumers need the same C language FindHDF5 needs here.
string(APPEND SAKURA_CONFIG_EXTRA [=[
get_property(_sakura_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if(NOT "C" IN_LIST _sakura_languages)
  enable_language(C)
endif()
find_dependency(HDF5 COMPONENTS C)
]=])
