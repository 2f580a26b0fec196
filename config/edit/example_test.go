package edit_test

import (
	"fmt"

	"github.com/shunt-dev/shunt/config/edit"
)

// The console moves the second rule up and adds one at the end; the
// comments stay with the rules they belong to.
func ExampleDoc_SetSequence() {
	d, err := edit.Parse("shunt.yaml", []byte(`rules:                # first match wins
  - name: web           # the intranet
    ports: [80, 443]
    action: tunnel
    profile: office
  # no cleartext POP3
  - name: pop
    ports: [110]
    action: block
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	type rule struct {
		Name   string `yaml:"name"`
		Ports  []int  `yaml:"ports,omitempty"`
		Action string `yaml:"action"`
	}
	err = d.SetSequence("rules", []edit.Item{
		edit.Keep(1),
		edit.Keep(0),
		edit.New(rule{Name: "rest", Action: "direct"}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(d.Bytes()))
	// Output:
	// rules:                # first match wins
	//   # no cleartext POP3
	//   - name: pop
	//     ports: [110]
	//     action: block
	//   - name: web           # the intranet
	//     ports: [80, 443]
	//     action: tunnel
	//     profile: office
	//   - name: rest
	//     action: direct
}
