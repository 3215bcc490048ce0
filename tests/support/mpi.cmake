# SPDX-License-Identifier: MIT
# SPDX-FileCopyrightText: sakura-cpp authors
# sakura_mpi_test(<name> NP <n>... [THREADS <t>] [TIMEOUT <s>] [EXPECT_ABORT <regex> [ONCE]] [GPU_PER_RANK | GPUS <k>] COMMAND <program> [<arg>...])
# One ctest entry "<name> (np <n>)" per rank count, running <program> under mpiexec with
# OMP_NUM_THREADS=1 in every rank (THREADS <t>: <t> in every rank, entries "<name> (np <n>, <t>
# threads)"). A hung job is ended by the launcher's own time limit (Open MPI's
# --timeout, then ctest's TIMEOUT), never left running. EXPECT_ABORT: the job must end with an
# error (not by the time limit) within the limit, with output matching <regex>
# (support/expect_abort.sh; ONCE: on exactly one line). GPU_PER_RANK: the job needs a GPU per rank; with fewer (none in CI) the
# test reports SKIPPED (support/require_gpus.sh, exit 77 = SKIP_RETURN_CODE; needs the target
# sakura_device_count). GPUS <k>: the job needs k GPUs in all, whatever the ranks (ranks sharing a
# GPU), skipped the same way with fewer. Without MPI (or its launcher) nothing is registered.
# sakura_mpi_catch_main: Catch2's main for tests run under MPI (every rank returns the same status).
include_guard(GLOBAL)

if(TARGET sakura::mpi AND NOT MPIEXEC_EXECUTABLE)
  message(STATUS "sakura: MPI found but no MPI launcher (mpiexec); the MPI tests are not registered (Debian: openmpi-bin)")
endif()

# Cache entries (recomputed at every configure), so that the function called from any directory
# (bench/, tools/ tests) sees them.
set(_flags "")
set(_timeout FALSE)
if(MPIEXEC_EXECUTABLE)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _version ERROR_QUIET)
  if(_version MATCHES "Open MPI|OpenRTE")
    # as root in CI containers, and more ranks than cores on small machines (MPICH allows both)
    set(_flags --allow-run-as-root --oversubscribe)
    set(_timeout TRUE)
  endif()
endif()
set(SAKURA_MPIEXEC_FLAGS "${_flags}" CACHE INTERNAL "mpiexec options of the MPI tests")
set(SAKURA_MPIEXEC_HAS_TIMEOUT ${_timeout} CACHE INTERNAL "mpiexec has --timeout (Open MPI)")

# The environment of every test that starts mpiexec (sakura_mpi_test, and scripts that launch jobs
# themselves, e.g. tests/story's): one thread per rank; under the sanitizers, Open MPI's own
# allocations at exit are not ours to report (see lsan_openmpi.supp).
set(_env "OMP_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")
if(SAKURA_SANITIZE)
  list(APPEND _env "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/lsan_openmpi.supp:print_suppressions=0:fast_unwind_on_malloc=0"
                   "OMPI_MCA_mca_base_component_disable_dlclose=1")
endif()
set(SAKURA_MPI_TEST_ENV "${_env}" CACHE INTERNAL "environment of the tests that start mpiexec")

if(TARGET sakura::mpi)
  add_library(sakura_mpi_catch_main STATIC ${CMAKE_CURRENT_LIST_DIR}/mpi_catch_main.cpp)
  target_link_libraries(sakura_mpi_catch_main PUBLIC Catch2::Catch2 sakura::mpi)
endif()

function(sakura_mpi_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "GPU_PER_RANK;ONCE" "TIMEOUT;EXPECT_ABORT;GPUS;THREADS" "NP;COMMAND")
  if(NOT TARGET sakura::mpi OR NOT MPIEXEC_EXECUTABLE)
    return()
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 120)
  endif()
  set(env "${SAKURA_MPI_TEST_ENV}")
  set(threads 1)
  set(suffix "")
  if(arg_THREADS)
    list(TRANSFORM env REPLACE "^OMP_NUM_THREADS=.*" "OMP_NUM_THREADS=${arg_THREADS}")
    set(threads ${arg_THREADS})
    set(suffix ", ${arg_THREADS} threads")
  endif()
  foreach(np IN LISTS arg_NP)
    set(launch ${MPIEXEC_EXECUTABLE} ${SAKURA_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} ${np})
    if(DEFINED arg_EXPECT_ABORT)
      # the script's own limit: a job ended by a launcher's time limit must not pass for an abort
      set(once)
      if(arg_ONCE)
        set(once --once)
      endif()
      set(command ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/expect_abort.sh ${once} ${arg_TIMEOUT} "${arg_EXPECT_ABORT}" ${launch} ${arg_COMMAND})
    elseif(SAKURA_MPIEXEC_HAS_TIMEOUT)
      set(command ${launch} --timeout ${arg_TIMEOUT} ${arg_COMMAND})
    else()
      set(command ${launch} ${arg_COMMAND})
    endif()
    set(gpus "")
    if(arg_GPU_PER_RANK)
      set(gpus ${np})
    elseif(arg_GPUS)
      set(gpus ${arg_GPUS})
    endif()
    if(gpus)
      set(command ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/require_gpus.sh ${gpus} $<TARGET_FILE:sakura_device_count> ${command})
    endif()
    set(test "${name} (np ${np}${suffix})")
    add_test(NAME "${test}" COMMAND ${command})
    if(gpus)
      set_tests_properties("${test}" PROPERTIES SKIP_RETURN_CODE 77)
    endif()
    math(EXPR ctest_timeout "${arg_TIMEOUT} + 30")
    math(EXPR processors "${np} * ${threads}")
    set_tests_properties("${test}" PROPERTIES ENVIRONMENT "${env}"
                         TIMEOUT ${ctest_timeout} PROCESSORS ${processors} LABELS mpi)
  endforeach()
endfunction()
