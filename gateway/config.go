package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shunt-dev/shunt/config"
)

// Config is the gateway's configuration file, as plain data. Unset keys
// hold their defaults (DefaultConfig).
type Config struct {
	// Listen are the addresses to accept SSH connections on.
	Listen []string
	// HostKey is the path of the host's private key; relative paths in
	// the file are relative to the file's directory.
	HostKey string
	// AuthorizedKeys is the path of the OpenSSH authorized_keys file.
	AuthorizedKeys string
	// Permit lists the destinations clients may open.
	Permit Permit
	// MaxStartups limits unauthenticated connections.
	MaxStartups MaxStartups
	// MaxAuthTries is the number of authentication attempts a connection
	// gets.
	MaxAuthTries int
	// LoginGraceTime is how long a connection may take to authenticate;
	// 0 is no limit.
	LoginGraceTime time.Duration
}

// MaxStartups is sshd's start:rate:full: past Start unauthenticated
// connections, new ones are dropped with probability Rate percent, rising
// linearly to 100% at Full.
type MaxStartups struct {
	Start, Rate, Full int
}

func (m MaxStartups) String() string {
	return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full)
}

// DefaultConfig is the configuration of an empty file.
func DefaultConfig() Config {
	return Config{
		Listen:         []string{":2222"},
		MaxStartups:    MaxStartups{Start: 10, Rate: 30, Full: 100},
		MaxAuthTries:   6,
		LoginGraceTime: 120 * time.Second,
	}
}

// configKeys are the keys of the file, in the order the documentation
// lists them.
var configKeys = []string{"listen", "host_key", "authorized_keys", "permit", "max_startups", "max_auth_tries", "login_grace_time"}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the gateway configuration: %v", err)}
	}
	return Parse(path, data)
}

// Parse decodes data, naming path in errors. Its error joins every problem
// found, each an *Error.
func Parse(path string, data []byte) (*Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil
		}
		return nil, yamlError(path, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, &Error{File: path, Line: max(line, 1), Msg: "a second YAML document (---): the gateway reads one; remove the --- and merge the settings"}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
		return &c, nil
	}
	var errs []error
	errorAt := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, &Error{File: path, Line: max(n.Line, 1), Msg: fmt.Sprintf(format, args...)})
	}
	if doc.Kind != yaml.MappingNode {
		errorAt(doc, "the file must be a mapping of settings (key: value), e.g. listen: [\":2222\"]")
		return nil, errors.Join(errs...)
	}
	dir := filepath.Dir(path)
	seen := map[string]int{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			errorAt(k, "a key must be a plain word; the keys are %s", strings.Join(configKeys, ", "))
			continue
		}
		if l, dup := seen[key]; dup {
			errorAt(k, "%s is set twice (first on line %d): keep one", key, l)
			continue
		}
		seen[key] = k.Line
		switch key {
		case "listen":
			items, ok := stringList(v)
			if !ok {
				errorAt(v, "listen must be a list of addresses, e.g. listen: [\":2222\", \"[::1]:2222\"]")
				continue
			}
			if len(items) == 0 {
				errorAt(v, "listen is empty: list at least one address, or remove the key for :2222")
				continue
			}
			c.Listen = nil
			for _, it := range items {
				if err := checkListen(it.Value); err != nil {
					errorAt(it, "listen %q: %v", it.Value, err)
					continue
				}
				c.Listen = append(c.Listen, it.Value)
			}
		case "host_key", "authorized_keys":
			if v.Kind != yaml.ScalarNode || v.Tag != "!!str" || v.Value == "" {
				errorAt(v, "%s must be a file path, e.g. %s: /etc/shunt/gateway_%s", key, key, key)
				continue
			}
			p := v.Value
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			if key == "host_key" {
				c.HostKey = p
			} else {
				c.AuthorizedKeys = p
			}
		case "permit":
			items, ok := stringList(v)
			if !ok {
				errorAt(v, "permit must be a list of NET[:PORTS] entries, e.g. permit: [\"10.0.0.0/8:22,443\"]")
				continue
			}
			c.Permit = nil
			for _, it := range items {
				e, err := ParseEntry(it.Value)
				if err != nil {
					errorAt(it, "%v", err)
					continue
				}
				c.Permit = append(c.Permit, e)
			}
		case "max_startups":
			m, err := ParseMaxStartups(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				if err == nil {
					err = errors.New("not a scalar")
				}
				errorAt(v, "max_startups: %v: write start:rate:full, e.g. \"10:30:100\", or one number", err)
				continue
			}
			c.MaxStartups = m
		case "max_auth_tries":
			n, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil || n < 1 || n > 1000 {
				errorAt(v, "max_auth_tries must be a whole number from 1 to 1000, e.g. max_auth_tries: 6")
				continue
			}
			c.MaxAuthTries = n
		case "login_grace_time":
			d, err := parseGrace(v)
			if err != nil {
				errorAt(v, "login_grace_time: %v", err)
				continue
			}
			c.LoginGraceTime = d
		default:
			msg := fmt.Sprintf("unknown key %q", key)
			if s := closestKey(key); s != "" {
				msg += fmt.Sprintf(": did you mean %s?", s)
			} else {
				msg += "; the keys are " + strings.Join(configKeys, ", ")
			}
			errorAt(k, "%s", msg)
		}
	}
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// stringList returns the items of a sequence of scalars.
func stringList(v *yaml.Node) ([]*yaml.Node, bool) {
	if v.Kind != yaml.SequenceNode {
		return nil, false
	}
	for _, it := range v.Content {
		if it.Kind != yaml.ScalarNode {
			return nil, false
		}
	}
	return v.Content, true
}

func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("write HOST:PORT, e.g. :2222, 0.0.0.0:2222 or [::1]:2222")
	}
	if strings.ContainsAny(host, " \t") {
		return fmt.Errorf("the host %q has a space", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q: write a number from 1 to 65535", port)
	}
	return nil
}

// ParseMaxStartups reads start:rate:full, or one number N for N:100:N.
func ParseMaxStartups(s string) (MaxStartups, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return MaxStartups{}, fmt.Errorf("%q is not a number above 0", p)
		}
		nums[i] = n
	}
	var m MaxStartups
	switch len(nums) {
	case 1:
		m = MaxStartups{Start: nums[0], Rate: 100, Full: nums[0]}
	case 3:
		m = MaxStartups{Start: nums[0], Rate: nums[1], Full: nums[2]}
	default:
		return MaxStartups{}, fmt.Errorf("%q has %d parts", s, len(nums))
	}
	if m.Rate > 100 {
		return MaxStartups{}, fmt.Errorf("rate %d is a percentage: at most 100", m.Rate)
	}
	if m.Start > m.Full {
		return MaxStartups{}, fmt.Errorf("start %d is above full %d", m.Start, m.Full)
	}
	return m, nil
}

var bareSeconds = regexp.MustCompile(`^[0-9]+$`)

func parseGrace(v *yaml.Node) (time.Duration, error) {
	const fix = "write a duration such as 120s or 2m, or a number of seconds; 0 is no limit"
	if v.Kind != yaml.ScalarNode {
		return 0, errors.New(fix)
	}
	s := strings.TrimSpace(v.Value)
	if bareSeconds.MatchString(s) {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return 0, errors.New(fix)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: %s", s, fix)
	}
	return d, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlError(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return &Error{File: path, Line: max(line, 1), Msg: "not valid YAML: " + msg + "; check this line's indentation (spaces, not tabs), colons and quotes"}
}

// closestKey is the known key nearest to s, if it is close.
func closestKey(s string) string {
	ls := strings.ToLower(strings.ReplaceAll(s, "-", "_"))
	if slices.Contains(configKeys, ls) {
		return ls
	}
	return config.Closest(ls, configKeys)
}
