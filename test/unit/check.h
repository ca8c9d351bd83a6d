/* A minimal test harness: CHECK records a failure and goes on; TEST runs one function and prints
 * a PASS/FAIL line named after it; main returns the number of failed tests. */
#ifndef AIRLOCK_CHECK_H
#define AIRLOCK_CHECK_H

#include <stdio.h>

static int check_failures_in_test;
static int check_tests_failed;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			check_failures_in_test++;                                          \
		}                                                                          \
	} while (0)

#define TEST(fn)                                                                           \
	do {                                                                               \
		check_failures_in_test = 0;                                                \
		fn();                                                                      \
		printf("%s %s\n", check_failures_in_test ? "FAIL" : "PASS", #fn);          \
		check_tests_failed += check_failures_in_test != 0;                         \
	} while (0)

#define TEST_EXIT_STATUS() (check_tests_failed ? 1 : 0)

#endif
