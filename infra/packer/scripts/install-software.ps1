# Installs Chrome, Node.js and Python in the template. Every installer comes
# from its vendor over HTTPS and must carry the vendor's valid Authenticode
# signature (Node.js is also checked against its published SHA-256 list).
# Versions come from Packer: HVKUBE_PYTHON_VERSION, HVKUBE_NODE_VERSION.

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12

$PythonVersion = $env:HVKUBE_PYTHON_VERSION
$NodeVersion = $env:HVKUBE_NODE_VERSION
if ($PythonVersion -notmatch '^3\.\d+\.\d+$') { throw "bad HVKUBE_PYTHON_VERSION '$PythonVersion'" }
if ($NodeVersion -notmatch '^\d+\.\d+\.\d+$') { throw "bad HVKUBE_NODE_VERSION '$NodeVersion'" }

$Work = Join-Path $env:SystemRoot 'Temp\hvkube-build'
New-Item -ItemType Directory -Force -Path $Work | Out-Null

function Write-Log([string] $Message) {
    Write-Host ('{0} {1}' -f (Get-Date -Format 'HH:mm:ss'), $Message)
}

function Get-Installer([string] $Url, [string] $Name, [string] $Signer) {
    $path = Join-Path $Work $Name
    for ($attempt = 1; $attempt -le 4; $attempt++) {
        try {
            Write-Log "download $Url"
            Invoke-WebRequest -Uri $Url -OutFile $path -UseBasicParsing
            break
        } catch {
            if ($attempt -eq 4) { throw }
            Start-Sleep -Seconds (10 * $attempt)
        }
    }
    $sig = Get-AuthenticodeSignature -FilePath $path
    if ($sig.Status -ne 'Valid' -or $sig.SignerCertificate.Subject -notmatch $Signer) {
        throw "bad signature on ${Name}: $($sig.Status) '$($sig.SignerCertificate.Subject)'"
    }
    return $path
}

function Install-Msi([string] $Path) {
    $log = "$Path.log"
    $p = Start-Process -FilePath msiexec.exe -ArgumentList @('/i', "`"$Path`"", '/qn', '/norestart', '/l*v', "`"$log`"") -Wait -PassThru
    if (@(0, 3010) -notcontains $p.ExitCode) { throw "msiexec $Path exited with $($p.ExitCode); see $log" }
}

# Chrome (enterprise MSI, always the current stable release).
Write-Log 'Chrome'
$chrome = Get-Installer 'https://dl.google.com/dl/chrome/install/googlechromestandaloneenterprise64.msi' 'chrome.msi' 'Google LLC'
Install-Msi $chrome

# Node.js
Write-Log "Node.js $NodeVersion"
$nodeName = "node-v$NodeVersion-x64.msi"
$node = Get-Installer "https://nodejs.org/dist/v$NodeVersion/$nodeName" $nodeName 'OpenJS Foundation'
$sums = (Invoke-WebRequest -Uri "https://nodejs.org/dist/v$NodeVersion/SHASUMS256.txt" -UseBasicParsing).Content -split "`n"
$expected = ($sums | Where-Object { $_ -match "\s$([regex]::Escape($nodeName))$" } | Select-Object -First 1) -split '\s+' | Select-Object -First 1
if (-not $expected -or (Get-FileHash -Algorithm SHA256 $node).Hash -ne $expected.ToUpperInvariant()) {
    throw "SHA-256 of $nodeName does not match SHASUMS256.txt"
}
Install-Msi $node

# Python, for all users, on PATH.
Write-Log "Python $PythonVersion"
$python = Get-Installer "https://www.python.org/ftp/python/$PythonVersion/python-$PythonVersion-amd64.exe" 'python.exe' 'Python Software Foundation'
$p = Start-Process -FilePath $python -ArgumentList @('/quiet', 'InstallAllUsers=1', 'PrependPath=1', 'Include_test=0', 'Include_doc=0') -Wait -PassThru
if (@(0, 3010) -notcontains $p.ExitCode) { throw "Python installer exited with $($p.ExitCode)" }

# Check that all three are where agents will look for them.
$env:Path = [Environment]::GetEnvironmentVariable('Path', 'Machine')
$chromeExe = Join-Path $env:ProgramFiles 'Google\Chrome\Application\chrome.exe'
if (-not (Test-Path $chromeExe)) { throw "Chrome is missing: $chromeExe" }
Write-Log "node $(& node.exe --version)"
Write-Log "$(& python.exe --version)"

Remove-Item -Recurse -Force $Work
Write-Log 'software installed'
