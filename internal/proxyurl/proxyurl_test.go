package proxyurl

import "testing"

func TestParse(t *testing.T) {
	for _, s := range []string{"socks4://p:1080", "socks4a://p:1080", "socks5://u:pw@p:1080", "http://[fd00::1]:3128"} {
		if _, err := Parse(s); err != nil {
			t.Errorf("Parse(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"ftp://p:21", "socks5://p", "http://:3128", "p:1080", "socks5://%zz:1", "http://p:3128/x", "http://p:3128?x", "http://p:3128#x"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
