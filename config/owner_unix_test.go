//go:build unix

package config

import "syscall"

// ownerSys is what a FileInfo's Sys says of a file that uid owns.
func ownerSys(uid uint32) any { return &syscall.Stat_t{Uid: uid} }
