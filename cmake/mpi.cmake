# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# Optional distributed training over MPI: the INTERFACE target sakura::mpi adds the MPI library and
# SAKURA_WITH_MPI=1 to sakura::sakura (sakura/dist/mpi.hpp). Without MPI it is absent: the library
# (dist::Comm's single-process engine included) builds and runs as before, and the MPI tests are skipped.

option(SAKURA_MPI "Provide sakura::mpi (distributed training over MPI) when an MPI library is found" ON)
if(NOT SAKURA_MPI)
  return()
endif()

# The C API only: the deprecated C++ bindings (libmpi_cxx) are neither used nor linked.
set(MPI_CXX_SKIP_MPICXX ON)
find_package(MPI COMPONENTS CXX)
if(NOT MPI_CXX_FOUND)
  message(STATUS "sakura: MPI not found; sakura::mpi (distributed training) is not available and the MPI tests "
                 "are skipped (Debian: libopenmpi-dev openmpi-bin)")
  return()
endif()

include(${CMAKE_CURRENT_LIST_DIR}/interface_target.cmake)
sakura_interface_target(mpi SAKURA_WITH_MPI MPI::MPI_CXX)
string(APPEND SAKURA_CONFIG_EXTRA "set(MPI_CXX_SKIP_MPICXX ON)\nfind_dependency(MPI COMPONENTS CXX)\n")
message(STATUS "sakura: MPI ${MPI_CXX_VERSION} found; sakura::mpi is available (launcher: ${MPIEXEC_EXECUTABLE})")
