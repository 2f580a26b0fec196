package broker

import (
	"slices"
	"testing"
)

func TestBannerLines(t *testing.T) {
	got := bannerLines("Authorized use only.\r\n\r\n\x1b[31mRed\x1b[0m text\n  indented  \n")
	want := []string{"Authorized use only.", "[31mRed[0m text", "indented"}
	if !slices.Equal(got, want) {
		t.Fatalf("bannerLines = %q, want %q", got, want)
	}
	if got := bannerLines("\n\n"); len(got) != 0 {
		t.Fatalf("blank banner gives %q", got)
	}
}
