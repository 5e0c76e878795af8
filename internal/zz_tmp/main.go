package main

import (
	"fmt"
	"os"
	"time"

	"github.com/notesctl/notesctl/render"
)

func main() {
	for i := 0; i < 3; i++ {
		t := time.Now()
		_, err := render.OpenSource(render.SourceOptions{SiteDir: os.Args[1]})
		fmt.Println(time.Since(t), err)
	}
}
