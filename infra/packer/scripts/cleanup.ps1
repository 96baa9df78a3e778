# Last provisioning step: remove build leftovers and shrink the disk so that
# the template VHDX is small and holds nothing from the build.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Write-Log([string] $Message) {
    Write-Host ('{0} {1}' -f (Get-Date -Format 'HH:mm:ss'), $Message)
}

# Setup keeps copies of the answer file (its passwords masked, but still).
Write-Log 'answer file copies'
foreach ($path in "$env:SystemRoot\Panther\unattend.xml", "$env:SystemRoot\Panther\Unattend\unattend.xml",
    "$env:SystemRoot\System32\Sysprep\unattend.xml") {
    if (Test-Path $path) { Remove-Item -Force $path }
}

Write-Log 'temporary files'
foreach ($dir in "$env:SystemRoot\Temp", $env:TEMP) {
    Get-ChildItem -Path $dir -Force -ErrorAction SilentlyContinue |
        # Packer's own uploaded scripts (this one included) are Packer's to remove.
        Where-Object { $_.Name -notlike 'packer-*' -and $_.Name -notlike 'script-*' } |
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
}

Write-Log 'component store cleanup'
& dism.exe /Online /Cleanup-Image /StartComponentCleanup /Quiet
if (@(0, 3010) -notcontains $LASTEXITCODE) { Write-Log "  dism exited with $LASTEXITCODE (ignored)" }

Write-Log 'trim free space'
Optimize-Volume -DriveLetter C -ReTrim -ErrorAction SilentlyContinue

Write-Log 'cleanup done'
