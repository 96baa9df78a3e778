"""Recordings of held VMs' screens: a frame about once a second and after every input
action, identical frames skipped, each with its time and the action before it.

`archive` keeps them on disk, `recorder` takes the frames, `export` turns one into an
animated WebP, GIF or MP4.
"""
