package testns

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Report(os.Stderr, true)
	os.Exit(code)
}

// childEnv makes the TestChild tests play a package whose tests lack
// something: "all" lacks something in every test, "some" in all but one.
const childEnv = "SHUNT_TESTNS_CHILD"

func child(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestReport in a child process")
	}
}

func TestChildLacksX(t *testing.T)    { child(t); Need(t, "needs x (apt-get install x)") }
func TestChildLacksXToo(t *testing.T) { child(t); Need(t, "needs x (apt-get install x)") }
func TestChildLacksY(t *testing.T)    { child(t); Need(t, "needs y") }
func TestChildMayHaveAll(t *testing.T) {
	child(t)
	if os.Getenv(childEnv) == "some" {
		Need(t, "")
		return
	}
	Need(t, "needs y")
}

// runChild runs this test binary's TestChild tests, without -v.
func runChild(t *testing.T, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestChild")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestReport(t *testing.T) {
	out, err := runChild(t, childEnv+"=all", RequiredEnv+"=")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"testns: 4 tests SKIPPED, not run:\n" +
			"  TestChildLacksX, TestChildLacksXToo: needs x (apt-get install x)\n" +
			"  TestChildLacksY, TestChildMayHaveAll: needs y\n" +
			"  (" + RequiredEnv + "=1 makes a missing prerequisite a failure)\n",
		"\n" + noTestsToRun + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, err = runChild(t, childEnv+"=some", RequiredEnv+"=")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(out, "testns: 3 tests SKIPPED") || strings.Contains(out, noTestsToRun) {
		t.Errorf("one test ran: want 3 skipped and no %q:\n%s", noTestsToRun, out)
	}

	out, err = runChild(t, childEnv+"=all", RequiredEnv+"=1")
	if err == nil || !strings.Contains(out, "needs y; "+RequiredEnv+"=1 makes this a failure") {
		t.Errorf("under %s=1 a missing prerequisite must fail: %v\n%s", RequiredEnv, err, out)
	}
}

// What a user of go test ./... sees: a package list shows only the ok line
// of a passing package, and that line must not look like a run.
func TestGoTestShowsSkips(t *testing.T) {
	goTool, err := exec.LookPath("go")
	lack := ""
	if err != nil {
		lack = "needs the go command"
	}
	Need(t, lack)
	cmd := exec.Command(goTool, "test", "-count=1", "-run", "^TestChild", ".")
	cmd.Env = append(os.Environ(), childEnv+"=all", RequiredEnv+"=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	if ok := regexp.MustCompile(`(?m)^ok  \t\S+/internal/testns\t\S+ \[no tests to run\]$`); !ok.Match(out) {
		t.Errorf("go test's line for a package whose every test was skipped does not say [no tests to run]:\n%s", out)
	}
}
