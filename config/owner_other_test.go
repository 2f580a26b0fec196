//go:build !unix

package config

func ownerSys(uint32) any { return nil }
