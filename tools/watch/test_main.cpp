#define BOOST_TEST_MODULE troupe_watch
#include <boost/test/unit_test.hpp>
